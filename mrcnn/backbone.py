"""ResNet-50/101 backbone and the feature pyramid (FPN), with the reference's layer names.

Every layer is named explicitly: Keras' automatic names come from process-wide
counters that Streamlit resets (``clear_session``) after each script run, which
can make two layers of a model being built in another thread collide.

``resnet`` returns C2..C5 (strides 4, 8, 16, 32); ``feature_pyramid`` turns them into
P2..P6 (P6 is P5 subsampled by 2, used only by the RPN). The stride-2 of each
stage sits in the first 1x1 convolution, as in the original Caffe ResNet.
"""
from __future__ import annotations

from keras import layers

RESNET_STAGE4_BLOCKS = {"resnet50": 5, "resnet101": 22}


def _bn(name):
    return layers.BatchNormalization(epsilon=1e-3, name=name)


def _bottleneck(x, filters, stage, block, strides=None):
    """One bottleneck block; a projection shortcut when ``strides`` is given."""
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    shortcut = x
    y = layers.Conv2D(f1, 1, strides=strides or 1, name=conv + "2a")(x)
    y = _bn(bn + "2a")(y)
    y = layers.Activation("relu", name=conv + "2a_relu")(y)
    y = layers.Conv2D(f2, 3, padding="same", name=conv + "2b")(y)
    y = _bn(bn + "2b")(y)
    y = layers.Activation("relu", name=conv + "2b_relu")(y)
    y = layers.Conv2D(f3, 1, name=conv + "2c")(y)
    y = _bn(bn + "2c")(y)
    if strides is not None:
        shortcut = layers.Conv2D(f3, 1, strides=strides, name=conv + "1")(x)
        shortcut = _bn(bn + "1")(shortcut)
    y = layers.Add(name=f"res{stage}{block}_add")([y, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def resnet_blocks(architecture="resnet101") -> list[tuple[int, str, int | None]]:
    """The bottleneck blocks of a ResNet in network order: (stage, block letter, stride).

    ``stride`` is given for the first block of each stage (it has the projection
    shortcut; 1 for stage 2, 2 after) and None for the identity blocks.
    """
    if architecture not in RESNET_STAGE4_BLOCKS:
        raise ValueError(f"BACKBONE must be one of {sorted(RESNET_STAGE4_BLOCKS)}, "
                         f"not {architecture!r}.")
    identity = {2: 2, 3: 3, 4: RESNET_STAGE4_BLOCKS[architecture], 5: 2}
    return [(stage, chr(ord("a") + i), (1 if stage == 2 else 2) if i == 0 else None)
            for stage in (2, 3, 4, 5) for i in range(identity[stage] + 1)]


def resnet(input_image, architecture="resnet101"):
    """(B, H, W, 3) -> [C2, C3, C4, C5]; H and W must be multiples of 64."""
    blocks = resnet_blocks(architecture)
    x = layers.ZeroPadding2D((3, 3), name="conv1_pad")(input_image)
    x = layers.Conv2D(64, 7, strides=2, name="conv1")(x)
    x = _bn("bn_conv1")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    outputs = []
    for index, (stage, block, stride) in enumerate(blocks):
        width = 64 * 2 ** (stage - 2)
        x = _bottleneck(x, [width, width, 4 * width], stage, block, strides=stride)
        if index + 1 == len(blocks) or blocks[index + 1][0] != stage:
            outputs.append(x)
    return outputs


def feature_pyramid(c2, c3, c4, c5, size=256):
    """C2..C5 -> [P2, P3, P4, P5, P6], each with ``size`` channels."""
    p5 = layers.Conv2D(size, 1, name="fpn_c5p5")(c5)
    p4 = layers.Add(name="fpn_p4add")([
        layers.UpSampling2D(2, name="fpn_p5upsampled")(p5),
        layers.Conv2D(size, 1, name="fpn_c4p4")(c4)])
    p3 = layers.Add(name="fpn_p3add")([
        layers.UpSampling2D(2, name="fpn_p4upsampled")(p4),
        layers.Conv2D(size, 1, name="fpn_c3p3")(c3)])
    p2 = layers.Add(name="fpn_p2add")([
        layers.UpSampling2D(2, name="fpn_p3upsampled")(p3),
        layers.Conv2D(size, 1, name="fpn_c2p2")(c2)])
    p2 = layers.Conv2D(size, 3, padding="same", name="fpn_p2")(p2)
    p3 = layers.Conv2D(size, 3, padding="same", name="fpn_p3")(p3)
    p4 = layers.Conv2D(size, 3, padding="same", name="fpn_p4")(p4)
    p5 = layers.Conv2D(size, 3, padding="same", name="fpn_p5")(p5)
    p6 = layers.MaxPooling2D(pool_size=1, strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
