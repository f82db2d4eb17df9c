"""The segmenter family: procedural scenes and mIoU (numpy only), the efficient encoder-decoder with a
simple or VWFormer head, a Hugging Face SegFormer adapter, and the trainer of the shipped weights.

- :mod:`.data`: ``make_scenes`` (train/val splits, any resolution), ``NUM_CLASSES``, ``CLASS_NAMES``;
- :mod:`.metrics`: ``to_class_map``, ``confusion_matrix``, ``score`` -> ``SegScore`` (mIoU, per-class IoU);
- :mod:`.model` / :mod:`.vwformer`: ``SegConfig``, ``SEG_PRESETS``, ``build_segmenter``, ``analytic_macs``;
- :mod:`.source`: ``--model seg-simple | seg-vwformer | hf-seg:DIR``; :mod:`.train`: the trainer.

Importing the package loads nothing: data and metrics stay torch-free for ``edgekit eval`` on a device.
"""
