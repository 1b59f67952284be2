"""Meta's Graph API errors: the catalog of WhatsApp codes and the exact error body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR_CODES_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """A code's title (Meta puts it in `message`), its usual details and its HTTP status."""

    title: str
    details: str
    http_status: int


# From Meta's error code reference. Throttling answers HTTP 400 in practice, not 429.
CATALOG: dict[int, ErrorSpec] = {
    0: ErrorSpec("AuthException", "We were unable to authenticate the app user.", 401),
    1: ErrorSpec("API Unknown", "Invalid request or possible server error.", 400),
    2: ErrorSpec("API Service", "Temporary due to downtime or due to being overloaded.", 503),
    3: ErrorSpec("API Method", "Capability or permissions issue.", 500),
    4: ErrorSpec("API Too Many Calls", "The app has reached its API call rate limit.", 400),
    10: ErrorSpec(
        "Permission Denied", "Permission is either not granted or has been removed.", 403
    ),
    100: ErrorSpec(
        "Invalid parameter",
        "The request included one or more unsupported or misspelled parameters.",
        400,
    ),
    190: ErrorSpec("Access token has expired", "Your access token has expired.", 401),
    200: ErrorSpec("API Permission", "Permission is either not granted or has been removed.", 403),
    368: ErrorSpec(
        "Temporarily blocked for policies violations",
        "The WhatsApp Business Account associated with the app has been restricted or disabled "
        "for violating a platform policy.",
        403,
    ),
    80007: ErrorSpec(
        "Rate limit issues", "The WhatsApp Business Account has reached its rate limit.", 400
    ),
    130429: ErrorSpec("Rate limit hit", "Cloud API message throughput has been reached.", 400),
    130472: ErrorSpec(
        "User's number is part of an experiment",
        "Message was not sent as part of an experiment.",
        400,
    ),
    130497: ErrorSpec(
        "Business account is restricted from messaging users in this country",
        "The WhatsApp Business Account is restricted from messaging users in certain countries.",
        403,
    ),
    131000: ErrorSpec(
        "Something went wrong", "Message failed to send due to an unknown error.", 500
    ),
    131005: ErrorSpec(
        "Access denied", "Permission is either not granted or has been removed.", 403
    ),
    131008: ErrorSpec(
        "Required parameter is missing", "The request is missing a required parameter.", 400
    ),
    131009: ErrorSpec(
        "Parameter value is not valid", "One or more parameter values are invalid.", 400
    ),
    131016: ErrorSpec(
        "Service unavailable", "A service is temporarily unavailable. Please retry.", 503
    ),
    131021: ErrorSpec(
        "Recipient cannot be sender", "Sender and recipient phone number is the same.", 400
    ),
    131026: ErrorSpec(
        "Message Undeliverable",
        "Unable to deliver message. Reasons can include: the recipient phone number is not a "
        "WhatsApp phone number; the recipient has not accepted our new Terms of Service and "
        "Privacy Policy; the recipient is using an old WhatsApp version.",
        400,
    ),
    131031: ErrorSpec(
        "Account has been locked",
        "The WhatsApp Business Account associated with the app has been restricted or disabled.",
        403,
    ),
    131042: ErrorSpec(
        "Business eligibility payment issue",
        "There was an error related to your payment method.",
        400,
    ),
    131045: ErrorSpec(
        "Incorrect certificate",
        "Message failed to send due to a phone number registration error.",
        400,
    ),
    131047: ErrorSpec(
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last "
        "replied to this number.",
        400,
    ),
    131048: ErrorSpec(
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be sent "
        "from this phone number. This may be because too many previous messages were blocked or "
        "flagged as spam.",
        400,
    ),
    131049: ErrorSpec(
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        400,
    ),
    131050: ErrorSpec(
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
        "messages on WhatsApp from your business.",
        "The user has stopped marketing messages.",
        400,
    ),
    131051: ErrorSpec("Unsupported message type", "Unsupported message type.", 400),
    131052: ErrorSpec(
        "Media download error", "Unable to download the media sent by the user.", 400
    ),
    131053: ErrorSpec("Media upload error", "Unable to upload the media used in the message.", 400),
    131056: ErrorSpec(
        "(Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone "
        "number to the same phone number in a short period of time.",
        400,
    ),
    131057: ErrorSpec(
        "Account in maintenance mode",
        "Business Account is in maintenance mode, possibly due to a throughput upgrade.",
        500,
    ),
    # Business-scoped user ids page: "BSUID recipients are not supported for this message".
    131062: ErrorSpec(
        "Business-scoped User ID (BSUID) recipients are not supported for this message.",
        "Business-scoped User ID (BSUID) recipients are not supported for this message.",
        400,
    ),
    131063: ErrorSpec(
        "Marketing templates are disabled for Cloud API",
        "Your template is categorized as Marketing, but marketing templates are currently "
        "disabled for your Cloud API configuration.",
        400,
    ),
    131064: ErrorSpec(
        "Messaging limit reached",
        "Message failed to send because this account has reached its messaging limit due to "
        "template classification violations.",
        400,
    ),
    132000: ErrorSpec(
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values included in the request did not match the "
        "number of variable parameters defined in the template.",
        400,
    ),
    132001: ErrorSpec(
        "Template name does not exist in the translation",
        "The template does not exist in the specified language or the template has not been "
        "approved.",
        400,
    ),
    132005: ErrorSpec(
        "Template Hydrated Text Too Long",
        "Translated text is too long.",
        400,
    ),
    132007: ErrorSpec(
        "Template Format Character Policy Violated",
        "Template content violates a WhatsApp policy.",
        400,
    ),
    132012: ErrorSpec(
        "Template Parameter Format Mismatch",
        "Variable parameter values formatted incorrectly.",
        400,
    ),
    132015: ErrorSpec("Template is Paused", "Template is paused due to low quality.", 400),
    132016: ErrorSpec("Template is Disabled", "Template has been paused too many times.", 400),
    133004: ErrorSpec("Server Temporarily Unavailable", "Server is temporarily unavailable.", 503),
}

INVALID_TOKEN_MESSAGE = "Invalid OAuth access token - Cannot parse access token"
MISSING_TOKEN_MESSAGE = "An access token is required to request this resource."


def spec_for(code: int) -> ErrorSpec:
    """The catalog entry, or a generic one for a code the catalog does not know."""
    return CATALOG.get(code) or ErrorSpec(f"Error {code}", f"Error {code}.", 400)


class GraphError(Exception):
    """An error answered the way the Graph API answers it."""

    def __init__(
        self,
        code: int,
        details: str | None = None,
        *,
        message: str | None = None,
        http_status: int | None = None,
        error_type: str = "OAuthException",
        subcode: int | None = None,
        user_title: str | None = None,
        user_msg: str | None = None,
    ) -> None:
        spec = spec_for(code)
        self.code = code
        self.details = details if details is not None else spec.details
        self.message = message if message is not None else f"(#{code}) {spec.title}"
        self.http_status = http_status if http_status is not None else spec.http_status
        self.error_type = error_type
        self.subcode = subcode
        # What the management endpoints (templates) add for people: `error_user_title/_msg`.
        self.user_title = user_title
        self.user_msg = user_msg
        super().__init__(f"{self.message}: {self.details}")

    def body(self, fbtrace_id: str) -> dict[str, Any]:
        """Meta's error body: `{"error": {message, type, code, error_data, fbtrace_id}}`."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.user_title is not None:
            error["is_transient"] = False
            error["error_user_title"] = self.user_title
            error["error_user_msg"] = self.user_msg or self.details
        error["fbtrace_id"] = fbtrace_id
        return {"error": error}


def invalid_param(details: str) -> GraphError:
    """Code 100, what Meta answers for a missing, misspelled or malformed parameter."""
    return GraphError(100, details)


def invalid_value(details: str) -> GraphError:
    """Code 131009, what Meta answers for a value outside its limits."""
    return GraphError(131009, details)


def status_error(code: int, details: str | None = None) -> dict[str, Any]:
    """An entry of a `failed` status's `errors[]`, as Meta posts it in a webhook."""
    spec = spec_for(code)
    return {
        "code": code,
        "title": spec.title,
        "message": spec.title,
        "error_data": {"details": details or spec.details},
        "href": ERROR_CODES_HREF,
    }
