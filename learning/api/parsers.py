"""A JSON parser whose every failure is a 400 naming the problem."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's JSONParser, except that a body nested too deeply for Python's decoder
    (a RecursionError, which DRF lets through as a 500) is a parse error too."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.")
