from __future__ import annotations

import logging

from shared.log import event, get_logger, redact_url, scrub


def test_redact_url_drops_query_and_fragment():
    assert redact_url("https://a.blob.core.windows.net/c/x%20y.mp4?sv=1&sig=abc#f") == \
        "https://a.blob.core.windows.net/c/x%20y.mp4"


def test_scrub_masks_sas_and_keys_in_free_text():
    text = scrub("failed GET https://a/c/b?sv=2&sig=SECRET1 and AccountKey=SECRET2; sig=SECRET3&x")
    assert "SECRET" not in text and "https://a/c/b" in text


def test_event_is_one_line_with_fields(caplog):
    with caplog.at_level(logging.INFO, logger="mp4tomp3"):
        event(get_logger("t"), logging.INFO, "upload.submitted", blob_name='a "b"\nc.mp4', task_id="a-1",
              url="http://x/y?sig=z", none=None)
    record = caplog.records[-1]
    assert record.getMessage() == 'upload.submitted blob_name="a \\"b\\"\\nc.mp4" task_id="a-1" url="http://x/y"'
    assert record.ctx_task_id == "a-1" and record.event == "upload.submitted"


def test_format_and_separator_characters_are_escaped_in_log_lines(caplog):
    import json
    import logging
    name = "clip\u202egpj.mp4\u2028fake line"
    with caplog.at_level(logging.INFO):
        event(get_logger("t"), logging.INFO, "upload.x", blob_name=name)
    line = caplog.records[-1].getMessage()
    assert "\u202e" not in line and "\u2028" not in line and "\\u202e" in line and "\\u2028" in line
    assert json.loads(line.split("blob_name=", 1)[1]) == name  # still decodes to the real name
