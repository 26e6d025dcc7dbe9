"""Click targets of the annotated picture (``studio.inspector_ui.click_targets``)."""
from __future__ import annotations

import numpy as np

from mrcnn.results import CompactMasks
from studio.inspector_ui import click_targets


def test_every_object_gets_a_target_and_the_best_object_owns_the_overlap():
    masks = np.zeros((512, 512, 3), bool)
    masks[100:300, 100:300, 0] = True          # big, best score
    masks[200:400, 200:400, 1] = True          # big, overlaps the first
    masks[451:454, 21:24, 2] = True            # 3x3 px between grid points (step 5)
    kept = np.array([4, 7, 9])                 # run indices of the shown objects
    xs, ys, owners = click_targets(CompactMasks.from_full(masks), kept, (512, 512))
    assert set(owners.tolist()) == {4, 7, 9}
    for x, y, owner in zip(xs, ys, owners):   # each target lies on its object's mask
        assert masks[y, x, list(kept).index(owner)]
    overlap = (ys >= 200) & (ys < 300) & (xs >= 200) & (xs < 300)
    assert overlap.any() and set(owners[overlap].tolist()) == {4}
    tiny = owners == 9
    assert tiny.sum() == 1 and (ys[tiny][0], xs[tiny][0]) in {(451 + i, 21 + j) for i in range(3)
                                                            for j in range(3)}
