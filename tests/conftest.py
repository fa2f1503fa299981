"""Shared pytest setup: import hnvl from this checkout, draw off-screen, keep the hnvl cache out of the user's home."""
import os, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault('MPLBACKEND', 'Agg')
if 'HNVL_CACHE' not in os.environ:
    os.environ['HNVL_CACHE'] = tempfile.mkdtemp(prefix='hnvl-test-cache-')
