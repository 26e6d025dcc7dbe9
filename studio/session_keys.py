"""Every ``st.session_state`` key the app uses, one constant each, in one place.

A key written on one page and read on another (the main page's picture, the object
picked in the inspector) is spelled once here, so the two can't drift apart; the
keys of widgets whose value is read back through ``st.session_state`` are here too.
The values are what tests and running sessions already hold: rename a constant, not
its string.
"""
from __future__ import annotations

# ------------------------------------------------------- between the pages
#: The main page's picture: RGB uint8 array, its name and digest (How it works reads them).
KEY_IMAGE = "selected_image"
KEY_IMAGE_NAME = "selected_image_name"
KEY_IMAGE_DIGEST = "selected_image_digest"
#: The inspected object as the teaching page follows it: {"digest", "class_id", ...}.
KEY_SELECTED_OBJECT = "selected_object"

# ---------------------------------------------------------------- visitor
#: The random half of this tab's visitor id (studio.sessions.session_id).
KEY_VISITOR = "_studio_visitor"
#: True once the operator unlocked this session (studio.public).
KEY_OPERATOR = "_studio_operator"
#: The operator password field (a widget; emptied after each try).
KEY_OPERATOR_PASSWORD = "operator_password"
#: The sentence shown under the password field after a failed try, or None.
KEY_OPERATOR_MESSAGE = "_operator_message"

# ------------------------------------------------------ main page: inputs
#: Upload key -> (working image, original (h, w)), or the error sentence.
KEY_DECODED_UPLOADS = "_decoded_uploads"
#: Upload file id -> SHA-256 of its bytes.
KEY_UPLOAD_DIGESTS = "digests"
#: The name of the sample photo the visitor picked.
KEY_SAMPLE = "sample"
#: The name of the picture being inspected.
KEY_PICKED = "picked"
#: The "Image to inspect" select box (a widget).
KEY_PICKER = "picker"
#: Keys of the pictures already seen (a new one is shown at once).
KEY_SEEN_PICTURES = "seen"

# ---------------------------------------------- main page: the inspector
#: {"digest", "index": the object's place in the run}.
KEY_INSPECTED = "inspected_object"
#: The annotated picture's click selection (a widget: st.plotly_chart).
KEY_OVERLAY_CLICK = "overlay_click"
#: The objects table's row selection (a widget: st.dataframe).
KEY_OBJECTS_TABLE = "objects_table"
#: The last run's click and row, so only a new one picks an object.
KEY_LAST_OVERLAY_CLICK = "_last_overlay_click"
KEY_LAST_OBJECTS_TABLE = "_last_objects_table"
#: Run index of each of the table's rows.
KEY_TABLE_ROWS = "_table_rows"

# ------------------------------------------------------ main page: Run all
#: The last Run all: {"signature": pictures and settings, "notes", "build": its ZIP}.
KEY_RUN_ALL_BUNDLE = "bundle"

# ---------------------------------------------- How it works: follow one object
#: The selection the follow section last matched, and the detection it follows (a widget).
KEY_FOLLOW_SOURCE = "hiw_follow_source"
KEY_FOLLOW_PICK = "hiw_follow_pick"

# ---------------------------------------------------------------- Video page
#: The visitor's clip analysis (studio.video_run.VideoJob), running or done.
KEY_VIDEO_JOB = "_video_job"
#: Digest -> path of the visitor's uploaded clip in its private temporary folder.
KEY_VIDEO_UPLOADS = "_video_uploads"
