"""The browser page (`reverie serve`): a Gradio app over the public API. Needs `pip install reverie[web]`.

reverie serve --runs runs/ --port 7860
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no telemetry calls
