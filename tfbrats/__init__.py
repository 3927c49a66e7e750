"""tfbrats: brain tumor segmentation with ImageNet-pretrained AlbuNet in Keras 3.

Importing the package is cheap: the subpackages (`tfbrats.models`, `tfbrats.data`, ...) load
TensorFlow, Keras and the imaging libraries only when they are imported themselves.
"""

__version__ = "0.1.0"
