"""IPM-Net (Identity Preservation Makeup Net, IJCAI 2020) for ipmcam.

Modules: ``config`` (full / lite hyper-parameters), ``preprocess`` (grey
out the makeup regions, keep the texture), ``networks`` (EI, ES, MLP, AdaIN
decoder, generator, multi-scale discriminator), ``weights`` (safetensors and
the model-directory manifest), ``export`` (ONNX graphs for the engines),
``onnx_graph`` (who writes and reads each tensor of a graph, for the
export's and the quantizer's rewrites).

Importing the package loads nothing heavy: torch is only needed by the
modules that build or train the network.
"""
