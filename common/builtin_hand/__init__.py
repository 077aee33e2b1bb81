"""The built-in procedural hand: the generator of ``asset/builtin_hand.npz`` (``build.py``), in
modules ``anatomy``, ``surface``, ``mesh`` and ``rig``. Run time only loads the asset
(``utils.mano.load_hand_model``); nothing here runs unless the asset is rebuilt or checked."""
