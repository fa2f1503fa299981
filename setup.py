"""Packaging for hnvl: every piece of metadata comes from settings.ini (the classic nbdev layout), no pkg_resources."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
config = ConfigParser(delimiters=['='])
config.read(here/'settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

for k in 'version description keywords author author_email license git_url lib_name user min_python'.split():
    assert k in cfg, f'settings.ini is missing {k!r}'

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License'),
            'mit': ('MIT License', 'OSI Approved :: MIT License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))
min_python = cfg['min_python']
py_versions = [f'3.{i}' for i in range(9, 14)]
def vtuple(v): return tuple(int(x) for x in v.split('.'))  # compare '3.10' >= '3.9' as numbers, not strings

def reqs(key): return cfg.get(key, '').split()

requirements = reqs('requirements')
extras = {'dev': reqs('dev_requirements'), 'spacy': reqs('spacy_requirements'), 'mlm': reqs('mlm_requirements')}
scripts = [s.strip() for s in cfg.get('console_scripts', '').split('\n') if s.strip()]

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()]
                + [f'Programming Language :: Python :: {v}' for v in py_versions if vtuple(v) >= vtuple(min_python)]
                + ([f'License :: {lic[1]}'] if lic[1] else []),
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['hnvl', 'hnvl.*']),
    include_package_data=True,
    package_data={'hnvl': ['assets/*.json', 'assets/*.txt', 'assets/pretrained/*.pt', 'assets/pretrained/*.json']},
    install_requires=requirements,
    extras_require=extras,
    python_requires='>=' + min_python,
    long_description=(here/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': scripts, 'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']},
    author=cfg['author'], author_email=cfg['author_email'], description=cfg['description'], keywords=cfg['keywords'],
)
