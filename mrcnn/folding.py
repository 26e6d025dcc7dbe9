"""Inference with every BatchNorm folded into its convolution: a transformation of the
one network, not a second one.

The network is written once, as Keras layers with the reference's names
(``mrcnn.backbone``, ``mrcnn.heads``); loading, training and inference all use those
layers and their variables. ``FoldedGraph`` runs a Keras functional model's own graph,
node by node, with one rewrite:

- a convolution whose output feeds only an inference BatchNormalization runs as one
  convolution on folded weights, and that BatchNormalization becomes the identity.
  Inference BatchNorm is an affine map per channel, so ``BN(conv(x, W) + b)`` equals
  ``conv(x, W * s) + (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``;
- every convolution adds its bias with ``tf.nn.bias_add``, which grappler fuses with
  the convolution, a residual add and the ReLU into one oneDNN kernel.

Every other node calls its own layer. The folded kernel and bias are computed inside
the compiled step from both layers' variables as they are at call time: weights changed
by any route (``load_weights``, ``keras_model.set_weights``, an optimiser step,
calibration) are what the next call uses, with nothing to refresh. The fold is one
multiply over the kernels per call, too small to measure beside the convolutions
(``benchmarks/detect.py``). The values differ from the unfolded graph only by float32
rounding; ``tests/test_folding.py`` checks every stage and the detections.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.layers import RoiDistributed


def _inner(layer):
    """The layer a ``RoiDistributed`` wraps (or the layer itself), and whether it wraps."""
    if isinstance(layer, RoiDistributed):
        return layer.layer, True
    return layer, False


def folded_weights(conv, bn):
    """(kernel, bias) of ``conv`` followed by inference ``bn``, from their current values."""
    scale = bn.gamma * tf.math.rsqrt(bn.moving_variance + bn.epsilon)
    bias = conv.bias if conv.use_bias else tf.zeros_like(bn.beta)
    return conv.kernel * scale, (bias - bn.moving_mean) * scale + bn.beta


def _runs_in(dtype, activation) -> bool:
    """Whether ``activation`` runs in a reduced ``dtype``: ReLU and the identity do;
    softmax and sigmoid (scores, mask probabilities) run in float32."""
    return dtype == tf.float32 or activation in (None, keras.activations.linear,
                                                 keras.activations.relu)


def _convolve(conv, x, kernel, bias, activation=None, dtype=tf.float32):
    """``conv``'s convolution with ``kernel`` and ``bias``; one as large as its input
    (the classifier head's 7x7 and 1x1 layers on a 7x7, then 1x1 map) as the matrix
    product it is. With a reduced ``dtype`` (bfloat16, float16) the input, kernel and
    bias are rounded to it first and the output stays in it, unless the activation
    must run in float32 (``_runs_in``)."""
    if dtype != tf.float32:
        x, kernel = tf.cast(x, dtype), tf.cast(kernel, dtype)
        bias = None if bias is None else tf.cast(bias, dtype)
        if not _runs_in(dtype, activation):
            y = _convolve(conv, x, kernel, bias)
            return activation(tf.cast(y, tf.float32))
    size = tuple(conv.kernel_size)
    if conv.padding == "valid" and tuple(x.shape[1:3]) == size and \
            tuple(conv.strides) == (1, 1):
        y = tf.matmul(tf.reshape(x, [-1, size[0] * size[1] * kernel.shape[2]]),
                      tf.reshape(kernel, [-1, kernel.shape[3]]))
        y = tf.reshape(y, [-1, 1, 1, kernel.shape[3]])
    else:
        y = conv.convolution_op(x, kernel)
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    return activation(y) if activation is not None else y


class FoldedGraph:
    """Callable: a Keras functional model's outputs for concrete inputs, BatchNorm folded.

    Nested functional models (the RPN's ``rpn_model``) are run the same way. It walks the
    model's own graph with Keras 3's ``Function._run_through_graph`` and reads the graph's
    nodes (``_nodes_by_depth``, ``_keras_history``): Keras internals, pinned by
    requirements.txt and covered by ``tests/test_folding.py``. Each layer is called once
    per graph, as in this network, so a fold belongs to one convolution call.
    """

    def __init__(self, functional: keras.Model, dtype=tf.float32):
        self.model = functional
        self.dtype = tf.as_dtype(dtype)
        self.folds = {}          # id(conv layer) -> its BatchNormalization layer
        self.folded_bns = set()  # id(BatchNormalization layer) folded into a conv
        self.nested = {}         # id(nested functional) -> FoldedGraph
        consumers = {}
        for nodes in functional._nodes_by_depth.values():
            for node in nodes:
                for tensor in node.input_tensors:
                    consumers.setdefault(id(tensor), []).append(node)
        for tensor in functional.outputs:
            consumers.setdefault(id(tensor), []).append(None)
        for nodes in functional._nodes_by_depth.values():
            for node in nodes:
                layer = node.operation
                if isinstance(layer, keras.Model):
                    self.nested[id(layer)] = FoldedGraph(layer, self.dtype)
                inner, _ = _inner(layer)
                if not isinstance(inner, keras.layers.BatchNormalization):
                    continue
                (tensor,) = node.input_tensors
                producer = tensor._keras_history.operation
                conv, _ = _inner(producer)
                only_consumer = len(consumers[id(tensor)]) == 1
                same_wrapping = isinstance(producer, RoiDistributed) == isinstance(
                    layer, RoiDistributed)
                if (type(conv) is keras.layers.Conv2D
                        and conv.activation in (None, keras.activations.linear)
                        and only_consumer and same_wrapping
                        and node.arguments.kwargs.get("training") in (None, False)):
                    self.folds[id(producer)] = inner
                    self.folded_bns.add(id(layer))

    def _operation(self, layer):
        """What runs in place of ``layer``'s call."""
        dtype = self.dtype
        if id(layer) in self.folded_bns:
            return lambda x, **_: x
        if id(layer) in self.nested:
            return lambda x, **_: self.nested[id(layer)](x)
        inner, distributed = _inner(layer)
        if id(layer) in self.folds:
            bn = self.folds[id(layer)]

            def conv_bn(x):
                kernel, bias = folded_weights(inner, bn)
                return _convolve(inner, x, kernel, bias, dtype=dtype)
        elif type(inner) is keras.layers.Conv2D:
            def conv_bn(x):
                return _convolve(inner, x, inner.kernel, inner.bias if inner.use_bias else None,
                                 inner.activation, dtype)
        elif (dtype != tf.float32 and type(inner) is keras.layers.Conv2DTranspose
              and _runs_in(dtype, inner.activation)):
            def conv_bn(x):
                return _transpose_convolve(inner, x, dtype)
        elif dtype != tf.float32 and not layer.weights and not (
                isinstance(layer, keras.layers.Activation)
                and not _runs_in(dtype, layer.activation)):
            # Reshapes, padding, pooling, adds, ReLU: the layer's own computation on the
            # reduced tensor (its __call__ would round the input back to float32).
            return lambda *args, **kwargs: layer.call(*args, **{
                k: v for k, v in kwargs.items() if k != "training"})
        else:
            # float32, or a layer that computes in float32 (softmax, sigmoid, the final
            # dense layers): called as it is; Keras casts its input to float32.
            return lambda *args, **kwargs: layer(*args, **{**kwargs, "training": False}) \
                if "training" in kwargs else layer(*args, **kwargs)
        if distributed:
            return lambda x, **_: RoiDistributed.over_rois(conv_bn, x)
        return lambda x, **_: conv_bn(x)

    def __call__(self, *inputs):
        outputs = self.model._run_through_graph(
            list(inputs), operation_fn=self._operation,
            call_fn=lambda operation, *args, **kwargs: operation(*args, **kwargs))
        if self.dtype != tf.float32:
            outputs = tf.nest.map_structure(
                lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, outputs)
        return outputs


def _transpose_convolve(layer, x, dtype):
    """A ``Conv2DTranspose`` layer's computation in a reduced ``dtype``."""
    y = keras.ops.conv_transpose(
        tf.cast(x, dtype), tf.cast(layer.kernel, dtype), strides=layer.strides,
        padding=layer.padding, output_padding=layer.output_padding,
        dilation_rate=layer.dilation_rate, data_format=layer.data_format)
    if layer.use_bias:
        y = tf.nn.bias_add(y, tf.cast(layer.bias, dtype))
    return layer.activation(y) if layer.activation is not None else y


#: What ``InferenceNetwork.features`` returns, in network order.
FEATURES = ("C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6", "rpn_probs", "rpn_deltas")


class InferenceNetwork:
    """The stages inference runs, each a ``FoldedGraph`` of the model's own layers.

    ``model.feature_model`` maps molded images to ``FEATURES``; ``model.heads``
    holds the RoI pooling and the two heads.
    """

    def __init__(self, model, dtype=tf.float32, _head_models=None):
        self.model, self.dtype = model, tf.as_dtype(dtype)
        self.features_graph = FoldedGraph(model.feature_model, dtype)
        self.heads = heads = model.heads
        self.head_models = _head_models or heads.head_models(model.config.TOP_DOWN_PYRAMID_SIZE)
        classifier, mask = self.head_models
        self.classifier_graph = FoldedGraph(classifier, dtype)
        self.mask_graph = FoldedGraph(mask, dtype)

    def in_dtype(self, dtype) -> InferenceNetwork:
        """The same network computing its convolutions in ``dtype`` (``mrcnn.precision``)."""
        return InferenceNetwork(self.model, dtype, self.head_models)

    def features(self, images) -> dict:
        """(B, H, W, 3) molded images -> {name: tensor} for ``FEATURES``."""
        return dict(zip(FEATURES, self.features_graph(images)))

    def classifier(self, rois, image_meta, feature_maps):
        """rois (B, N, 4), P2..P5 -> probs (B, N, C), deltas (B, N, C, 4)."""
        probs, deltas = self.classifier_graph(
            self.heads.roi_align_classifier(rois, image_meta, feature_maps))
        return probs, deltas

    def masks(self, slots, count, image_meta, feature_maps):
        """The first ``count`` of the detection slots (B, DETECTION_MAX_INSTANCES, 4)
        -> soft masks (B, count, h, w, C).

        Pyramid levels are computed over all slots, as the reference does, then only
        the real detections are pooled and run through the head (each RoI's mask
        depends on that RoI alone).
        """
        roi_align = self.heads.roi_align_mask
        levels = roi_align.levels(slots, image_meta)[:, :count]
        pooled = roi_align(slots[:, :count], image_meta, feature_maps, levels=levels)
        return self.mask_graph(pooled)
