"""``raylens logs``: Ray's log files on every node, read through the dashboard's log API.

``files`` names the component and ids behind each file name, ``lines`` parses Ray's line formats,
``api`` talks to ``/api/v0/logs``, ``search`` selects files and filters lines, ``output`` writes
text or JSON lines (gzip by extension), ``cli`` is the command.
"""
