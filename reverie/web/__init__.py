"""The browser page (`reverie serve`): a Gradio app over the public API. Needs `pip install reverie[web]`.

reverie serve --runs runs/ --port 7860
"""
