"""HO3D: the loader (HO3D.py), the converter of the raw release (build_annotations.py) and the
fingertip comparison (fingertips.py).

A regular package (not a namespace one), so that ``import HO3D`` means this folder even when
``data/HO3D/`` itself is first on the path (running ``python data/HO3D/build_annotations.py``),
where the module ``HO3D.py`` would otherwise shadow it.
"""
