"""JSON errors that name the field and the problem; never an HTML 500."""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from learning.services.runs import IngestBusy

logger = logging.getLogger(__name__)

try:  # COPY (the ingest hot path) raises psycopg's own error, not Django's wrapper
    from psycopg import DataError as PsycopgDataError

    DATA_ERRORS: tuple[type[Exception], ...] = (DataError, PsycopgDataError)
except ImportError:  # pragma: no cover - SQLite-only installs
    DATA_ERRORS = (DataError,)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object changed under you; reload and try again."
    default_code = "conflict"


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        )
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    response = drf_exception_handler(exc, context)
    if response is not None:
        if isinstance(response.data, list):
            response.data = {"detail": response.data}
        return response
    if isinstance(exc, IngestBusy):
        return Response(
            {
                "detail": "The server is busy with conflicting writes; nothing was "
                "stored. Retry after the delay.",
                "code": "busy",
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, DATA_ERRORS):
        # A value Python accepted but the database cannot hold (a time zone offset
        # beyond ±15:59, a number out of range): the caller's input, not our fault.
        logger.info("data error: %s", exc)
        return Response(
            {
                "detail": "A value is out of the range the database accepts (for example a "
                "time zone offset beyond ±15:59).",
                "code": "invalid",
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, IntegrityError):
        logger.warning("integrity error: %s", exc)
        return Response(
            {"detail": "The request conflicts with stored data.", "code": "conflict"},
            status=status.HTTP_409_CONFLICT,
        )
    logger.exception("unhandled API error", exc_info=exc)
    return Response(
        {"detail": "Internal error; nothing was stored.", "code": "server_error"},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
