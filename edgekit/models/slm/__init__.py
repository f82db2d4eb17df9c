"""edgekit's small language models: an encoder-decoder with rotary positions and its decoder-only twin
(config, model, data and training), their ONNX graphs, and Hugging Face T5/BART import."""
