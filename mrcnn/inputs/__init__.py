"""Images coming in: uploads decoded safely (:mod:`mrcnn.inputs.uploads`) and the bundled
sample photos (:mod:`mrcnn.inputs.samples`)."""
