"""The report's options, apart from the PDF code, so that registering the routes and the
command does not import the PDF library (reportlab) into every process start."""

SESSIONS = ("open", "closed")
ARM_MODES = ("coded", "named")
