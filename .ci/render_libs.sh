#!/usr/bin/env bash
# Headless rendering (pyrender) needs Mesa's EGL (preferred) or OSMesa. Install them when missing
# and we are root with apt-get; otherwise say exactly what to install.
set -euo pipefail
have() { ldconfig -p 2>/dev/null | grep -q "$1"; }
if have 'libEGL_mesa.so' && have 'libEGL.so.1'; then exit 0; fi
if have 'libOSMesa.so'; then exit 0; fi
pkgs="libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libosmesa6"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "render-libs: installing $pkgs (headless rendering)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
else
  echo "render-libs: headless rendering needs Mesa EGL or OSMesa; install them with:" >&2
  echo "  sudo apt-get install $pkgs" >&2
  exit 1
fi
