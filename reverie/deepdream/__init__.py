"""DeepDream: amplify what a pretrained convnet sees in an image, by gradient ascent on the image.

    import reverie
    dreamer = reverie.load_dreamer("efficientnet_lite0")       # the net, prepared once
    dreamer.dream("photo.jpg").save("photo-dream.png")        # as many dreams as you like
    reverie.dream("photo.jpg", model="efficientnet_lite0")    # one dream: loads, dreams, returns

Modules: `backbone` (the convnets and their registry; `inception_v3`, `googlenet`,
`efficientnet_lite` define them, `weights` and `keras_import` read their files), `options` (every
knob, the presets, options -> transforms), `objectives` (what is maximized: the namespace over
`objective_core`, `objective_terms`, `objective_parse`), `transforms` (the one transform protocol
of dreams and visualizations), `octaves` (the octave loop and the gradient step), `tiling`
(gradients in bounded memory), `dreamer` (the loaded model, `choose_dtype`, the one-shot
functions), `stopping` (what `stop=` takes), `dreamtypes` (the types those pass each other),
`visualize`, `folder`, `zoom`, `images`, a video's `video` (the run), `videooptions`, `carrier`
(frame to frame), `videostate` (frames on disk, resuming), `videoio` and `flow`, and `command`
(`reverie dream`, `reverie layers`, `reverie visualize`).
"""
