"""Converters from other agents' run formats to the documented run payload: pure
functions (record -> payload dict), no ORM, so importers and evaluations share them."""
