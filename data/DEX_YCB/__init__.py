"""DexYCB: the loader (DEX_YCB.py) and the converter of the raw release (build_annotations.py).

A regular package (not a namespace one), so that ``import DEX_YCB`` means this folder even when
``data/DEX_YCB/`` itself is first on the path (running ``python data/DEX_YCB/build_annotations.py``),
where the module ``DEX_YCB.py`` would otherwise shadow it.
"""
