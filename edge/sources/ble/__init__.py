"""BLE source: advert payload parsers (``frames``) and the scanner adapter; import the submodules directly."""
