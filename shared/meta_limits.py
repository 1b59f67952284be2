"""Meta's limits on what a message may carry (Cloud API reference, "Messages"): the sender
checks a command against them before calling Meta, and the sandbox refuses what Meta refuses.
Defined once here so the two never disagree."""

TEXT_BODY_MAX = 4096
CAPTION_MAX = 1024
INTERACTIVE_BODY_MAX = 1024
LIST_BODY_MAX = 4096
HEADER_FOOTER_MAX = 60
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
LIST_BUTTON_MAX = 20
SECTIONS_MAX = 10
ROWS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
SECTION_TITLE_MAX = 24
CTA_DISPLAY_TEXT_MAX = 20
OPAQUE_DATA_MAX = 512
TEMPLATE_NAME_MAX = 512
FILENAME_MAX = 240
# The media kinds that take a caption.
CAPTIONED = ("image", "video", "document")
