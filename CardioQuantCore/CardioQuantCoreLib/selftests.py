"""The modules' self-tests: one body per module, run by its `*Test` class in Slicer (headless:
`Slicer --no-main-window --python-code "slicer.selfTests['CalciumScoring']()"`) and by pytest on slicer-core
(Testing/test_module_selftests.py), on the same Logic.

Each drives its Logic end to end on a generated input whose answer is known independently (a hand-worked phantom,
a phantom built to a known BMD, %LGE or FFR): the run, the reader's nodes as inputs, and re-scoring the result.
`test` is a unittest.TestCase (its assertions); `logic` the module's Logic; the scene is `slicer.mrmlScene`.
"""

import os
import tempfile

import slicer


def _load(path, name):
    from cardioquant import scene

    return scene.load_volume(slicer.mrmlScene, path, name)


def calcium(test, logic):
    """The hand-worked block phantom (LAD 16 + RCA 6 = Agatston 22 at 120 kVp), scored semi-automatically from its
    artery labels; re-scored with the run's own settings; the reader moves the RCA lesion to the LCX and the panel's
    figures follow."""
    from cardioquant.calcium.phantom import write_block_phantom

    with tempfile.TemporaryDirectory() as folder:
        ctPath, labelPath = write_block_phantom(folder)
        volumeNode = _load(ctPath, "block phantom")
        settings = logic.settings(labels=labelPath, mode="noncontrast", kvp=120.0)
        segmentationNode, tableNode, result = logic.process(volumeNode, settings)
    test.assertAlmostEqual(result.summary["total"]["agatston"], 22.0)
    test.assertAlmostEqual(result.summary["arteries"]["LAD"]["agatston"], 16.0)
    test.assertAlmostEqual(result.summary["arteries"]["RCA"]["agatston"], 6.0)
    test.assertEqual(result.options["mode"], "noncontrast")  # the settings the run was given, as its JSON keeps
    test.assertEqual(tableNode.GetNumberOfRows(), 5)  # LM, LAD, LCX, RCA, total
    rescored = logic.rescore(volumeNode, segmentationNode, result.settings)
    test.assertAlmostEqual(rescored["total"]["agatston"], 22.0)
    rca = next(lesion for lesion in rescored["lesions"] if lesion["artery"] == "RCA")
    logic.reassignLesion(volumeNode, segmentationNode, rca["centroid_ijk"], 3)
    shown = logic.editedResult(volumeNode, segmentationNode, logic.resultDocument(result, volumeNode))  # the panel's
    test.assertAlmostEqual(shown.summary["arteries"]["LCX"]["agatston"], 6.0)
    test.assertAlmostEqual(shown.summary["arteries"]["RCA"]["agatston"], 0.0)
    test.assertAlmostEqual(shown.summary["total"]["agatston"], 22.0)
    test.assertEqual(len(shown.table_rows), 5)


def scar(test, logic):
    """A phantom LGE stack of known %LGE with the reader's LV mask given as a segmentation node: 5-SD scar within
    0.5 points of the truth, 17 AHA segments; quantified again as drawn (no edit), the figures are the run's."""
    from cardioquant import scene
    from cardioquant.scar.phantom import write_lge_phantom

    with tempfile.TemporaryDirectory() as folder:
        scanPath, maskPath, truePercent = write_lge_phantom(folder)
        volumeNode = _load(scanPath, "lge phantom")
        maskNode = scene.load_volume(slicer.mrmlScene, maskPath, "reader's LV")
        myocardiumNode = scene.segmentation_node_from_labelmap(
            slicer.mrmlScene, scene.image_from_volume_node(maskNode), volumeNode, logic.pipeline().LABEL_TABLE,
            "reader's myocardium")
        settings = logic.settings(method="nsd", n_sd=5.0)
        segmentationNode, tableNode, result = logic.process(volumeNode, settings,
                                                            {"myocardium_mask": myocardiumNode})
    test.assertAlmostEqual(result.summary["lge_percent"], truePercent, delta=0.5)
    test.assertEqual(tableNode.GetNumberOfRows(), 17)
    again = logic.editedResult(volumeNode, segmentationNode, logic.resultDocument(result, volumeNode))
    for figure in ("lge_percent", "scar_ml", "myocardium_ml"):
        test.assertAlmostEqual(again.summary[figure], result.summary[figure], places=6)
    test.assertEqual(again.settings["rv_insertion_deg"], result.settings["rv_insertion_deg"])


def bone_density(test, logic):
    """A spine phantom of known BMD (L1 110, L2 104 mg/cm3) with TotalSegmentator-style vertebra labels, given
    as a file and as the reader's segmentation node: within 3 mg/cm3 of the truth, the same by both."""
    from cardioquant import scene
    from cardioquant.bmd.levels import TOTALSEGMENTATOR_VALUES
    from cardioquant.bmd.phantom import write_spine_phantom
    from cardioquant.labels import TISSUE, LabelTable, SegmentSpec

    with tempfile.TemporaryDirectory() as folder:
        scanPath, labelsPath, trueBmd = write_spine_phantom(folder)
        volumeNode = _load(scanPath, "spine phantom")
        _, tableNode, byFile = logic.process(volumeNode, logic.settings(vertebra_mask=labelsPath))
        labelsNode = scene.load_volume(slicer.mrmlScene, labelsPath, "vertebrae")
        table = LabelTable([SegmentSpec(value, f"vertebrae_{level}", (1, 1, 1), TISSUE, TISSUE)
                            for level, value in TOTALSEGMENTATOR_VALUES.items()])
        vertebraeNode = scene.segmentation_node_from_labelmap(
            slicer.mrmlScene, scene.image_from_volume_node(labelsNode), volumeNode, table, "vertebrae",
            include_empty=False)
    _, _, byNode = logic.process(volumeNode, logic.settings(), {"vertebra_mask": vertebraeNode})
    for level, value in trueBmd.items():
        test.assertAlmostEqual(byFile.summary["vertebrae"][level]["bmd_mg_cm3"], value, delta=3.0)
        test.assertAlmostEqual(byNode.summary["vertebrae"][level]["bmd_mg_cm3"],
                               byFile.summary["vertebrae"][level]["bmd_mg_cm3"], places=6)
    test.assertGreaterEqual(tableNode.GetNumberOfRows(), len(trueBmd))


def ctffr(test, logic):
    """A synthetic left coronary tree with a 70 % area stenosis, from its lumen mask: each vessel's distal FFR
    within 0.03 of the FFR solved on the true geometry."""
    from cardioquant.ffr.phantom import write_tree_phantom

    with tempfile.TemporaryDirectory() as folder:
        ctaPath, lumenPath, trueDistal = write_tree_phantom(folder)
        volumeNode = _load(ctaPath, "coronary tree phantom")
        _, tableNode, result = logic.process(volumeNode, logic.settings(lumen_mask=lumenPath))
        test.assertTrue(os.path.exists(lumenPath))  # the reader's file is read, never moved or changed
    distal = sorted(v["distal_ffr"] for v in result.summary["vessels"].values())
    test.assertEqual(len(distal), len(trueDistal))
    for measured, expected in zip(distal, sorted(trueDistal), strict=True):
        test.assertAlmostEqual(measured, expected, delta=0.03)
    test.assertEqual(tableNode.GetNumberOfRows(), len(trueDistal))

