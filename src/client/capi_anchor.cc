// libgismo.so is gismo_core, whole; this file only gives the target a source.
