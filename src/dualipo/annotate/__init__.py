"""The annotation app for the human seed set (`dualipo annotate`): items from a run, a video folder or a manifest
(items.py), the labels file that never loses or duplicates a label (store.py), the FastAPI app and its page
(app.py, templates/annotate.html), agreement statistics (stats.py) and the command (command.py)."""
