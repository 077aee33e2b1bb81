"""SYNTH: the built-in synthetic hand-object data set (generator and loader).

A regular package (not a namespace one), so that ``import SYNTH`` means this folder even when
``data/SYNTH/`` itself is first on the path (running ``python data/SYNTH/generate.py``), where the
module ``SYNTH.py`` would otherwise shadow it.
"""
