# mmdet's COCO instance data, read through CheckedCocoDataset: it checks the
# annotation and image files when it loads and loads images with
# CheckedLoadImageFromFile, so errors name the file.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

train_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader
