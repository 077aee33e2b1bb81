"""The one place that puts the project's source folders on the import path.

Entry scripts in ``main/`` import it directly (their folder is already on the path); scripts in other
folders first put ``main/`` on the path and then import it. Tests get the same folders from
``pytest.ini``.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = (ROOT / 'common', ROOT / 'main', ROOT / 'data')

for _d in SOURCE_DIRS:
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))
