"""Class names: COCO's in matterport's order, COCO's own category ids, and the one lookup."""

COCO_CLASS_NAMES = [
    "BG", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear",
    "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", "dining table", "toilet", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]

# COCO's category id for each of the model's contiguous class ids 1..80
# (index 0, background, has none).
COCO_CATEGORY_IDS = [
    None, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
]


def class_names_for(config) -> list[str]:
    """The names of a config's classes, background first.

    A config's own ``CLASS_NAMES`` (a list of NUM_CLASSES names) wins; else COCO's
    names for an 81-class config, else ``class <id>`` for each class id.
    """
    names = getattr(config, "CLASS_NAMES", None)
    if names is not None:
        if len(names) != config.NUM_CLASSES:
            raise ValueError(f"{type(config).__name__}.CLASS_NAMES has {len(names)} names "
                             f"for NUM_CLASSES = {config.NUM_CLASSES}.")
        return [str(name) for name in names]
    if config.NUM_CLASSES == len(COCO_CLASS_NAMES):
        return list(COCO_CLASS_NAMES)
    return ["BG"] + [f"class {i}" for i in range(1, config.NUM_CLASSES)]


def class_name(class_names, class_id: int) -> str:
    """``class_names[class_id]``, or ``class <id>`` when the list has no such entry."""
    class_id = int(class_id)
    if class_names is not None and 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"


def category_ids_for(class_names) -> list:
    """Each class id's category id, index 0 (background) ``None``.

    COCO's own ids 1-90 (:data:`~mrcnn.classes.COCO_CATEGORY_IDS`) when ``class_names``
    are COCO's, else the class ids themselves (1..K).
    """
    names = [str(name) for name in class_names]
    if names == list(COCO_CLASS_NAMES):
        return list(COCO_CATEGORY_IDS)
    return [None] + list(range(1, len(names)))


assert len(COCO_CLASS_NAMES) == 81 and len(COCO_CATEGORY_IDS) == 81
