"""Everything that runs beside the hardware: transports, codecs, exchanges, simulator."""
