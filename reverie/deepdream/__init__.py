"""DeepDream: amplify what a pretrained convnet sees in an image, by gradient ascent on the image.

    import reverie
    dreamer = reverie.load_dreamer("efficientnet_lite0")       # the net, prepared once
    dreamer.dream("photo.jpg").save("photo-dream.png")        # as many dreams as you like
    reverie.dream("photo.jpg", model="efficientnet_lite0")    # one dream: loads, dreams, returns

Modules: `backbone` (the convnets and their registry; `inception_v3`, `googlenet`,
`efficientnet_lite` define them, `weights` and `keras_import` read their files), `options` (every
knob, the presets), `objectives` (what is maximized), `transforms` (what happens to the image and
the gradient at each step), `octaves` (the octave loop and the gradient step), `tiling` (gradients
in bounded memory), `dreamer` (the loaded model and the one-shot functions), `dreamtypes` (the
types those pass each other), `folder`, `zoom`, `images`, and `command` (`reverie dream`,
`reverie layers`).
"""
