"""Pascal VOC-style segmentation: class and instance PNGs, their XML and label map.

For an image ``<stem>``:

- ``SegmentationClass/<stem>.png``: 8-bit palette PNG, each pixel its class index
  (the model's class id; 0 background);
- ``SegmentationObject/<stem>.png``: 8-bit palette PNG, each pixel its object's number
  (1 for the first object written; 0 background), in the order of the XML's objects;
- ``Annotations/<stem>.xml``: VOC's annotation (size, ``segmented`` 1, one ``object``
  per object with its class name and its mask's box, VOC's 1-based inclusive pixels).

Both PNGs use VOC's colour map (:func:`voc_colormap`). The masks are exact (no polygons).
Where objects overlap, the higher-scored one owns the pixel (results are best first, so
they are painted last to first). VOC's 255 "void" band along object borders, drawn by
VOC's annotators around uncertain pixels, is not drawn: a model's mask has no uncertain
band, and 255 is kept unused so no class or object can be mistaken for it.
``labelmap.txt`` and ``ImageSets/Segmentation/default.txt`` are the two extra files of
CVAT's "Segmentation mask 1.1" layout (label colours in index order; the image stems).
"""
from __future__ import annotations

import io
from xml.etree.ElementTree import Element, SubElement, tostring

import numpy as np
from PIL import Image

from mrcnn.classes import class_name

__all__ = ["MAX_INDEX", "voc_annotation_xml", "voc_colormap", "voc_label_pngs",
           "voc_labelmap"]

#: The largest class index or object number a PNG holds (255 is VOC's "void").
MAX_INDEX = 254


def voc_colormap(count: int = 256) -> np.ndarray:
    """VOC's colour map, ``(count, 3) uint8``: index bits spread over R, G, B, high bit first.

    Bits 0, 1, 2 of the index go to the top bit of R, G, B, bits 3, 4, 5 to the next
    bit down, and so on (VOC devkit's ``labelcolormap``): 1 is (128, 0, 0), 2 is (0, 128, 0).
    """
    index = np.arange(count)
    colours = np.zeros((count, 3), np.uint8)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            colours[:, channel] |= (bit << (7 - shift)).astype(np.uint8)
    return colours


def _palette_png(indices: np.ndarray) -> bytes:
    image = Image.fromarray(indices)              # mode "L"; a palette makes it "P"
    image.putpalette(voc_colormap().ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def voc_label_pngs(shapes, result: dict, image_shape) -> tuple[bytes, bytes]:
    """(SegmentationClass PNG, SegmentationObject PNG) of one image's ``shapes``.

    ``shapes`` are :class:`~mrcnn.export.polygons.ObjectShape` in result order; object
    ``k`` (1-based) of the instance PNG is ``shapes[k - 1]``.
    """
    shapes = list(shapes)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    if len(shapes) > MAX_INDEX:
        raise ValueError(f"{len(shapes)} objects: a VOC instance PNG holds at most "
                         f"{MAX_INDEX}; raise the confidence threshold to keep fewer")
    classes = np.zeros(image_shape[:2], np.uint8)
    objects = np.zeros(image_shape[:2], np.uint8)
    for number in range(len(shapes), 0, -1):
        shape = shapes[number - 1]
        class_id = int(class_ids[shape.index])
        if not 0 < class_id <= MAX_INDEX:
            raise ValueError(f"class id {class_id} does not fit a VOC class PNG "
                             f"(1..{MAX_INDEX})")
        y1, x1, y2, x2 = shape.window
        classes[y1:y2, x1:x2][shape.crop] = class_id
        objects[y1:y2, x1:x2][shape.crop] = number
    return _palette_png(classes), _palette_png(objects)


def voc_annotation_xml(shapes, result: dict, class_names, file_name: str, image_shape) -> bytes:
    """``Annotations/<stem>.xml`` for one image: its objects in ``shapes`` order."""
    height, width = int(image_shape[0]), int(image_shape[1])
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    root = Element("annotation")
    SubElement(root, "filename").text = file_name
    size = SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        SubElement(size, tag).text = str(value)
    SubElement(root, "segmented").text = "1"
    for shape in shapes:
        y1, x1, y2, x2 = shape.window
        item = SubElement(root, "object")
        SubElement(item, "name").text = class_name(class_names, class_ids[shape.index])
        SubElement(item, "pose").text = "Unspecified"
        touches_border = y1 == 0 or x1 == 0 or y2 == height or x2 == width
        SubElement(item, "truncated").text = str(int(touches_border))
        SubElement(item, "difficult").text = "0"
        box = SubElement(item, "bndbox")
        # VOC counts pixels from 1 and includes the last one: [x1, x2) -> x1 + 1 .. x2.
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            SubElement(box, tag).text = str(value)
    return tostring(root, encoding="utf-8", xml_declaration=True)


def voc_labelmap(class_names) -> str:
    """CVAT's ``labelmap.txt``: ``name:r,g,b::`` per class index, background first."""
    colours = voc_colormap(len(class_names))
    lines = ["# label:color_rgb:parts:actions"]
    for class_id, colour in enumerate(colours):
        name = "background" if class_id == 0 else class_name(class_names, class_id)
        lines.append(f"{name.replace(':', ' ')}:{','.join(str(int(c)) for c in colour)}::")
    return "\n".join(lines) + "\n"
