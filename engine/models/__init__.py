"""The models folder (a Hugging Face hub cache): what is present and how big (`store`), downloads that resume
(`download`), and the gate that refuses a job whose model is missing. Light: imports the protocol, errors and
huggingface_hub only (never torch, never priors/), so `python -m engine models list` starts fast."""
