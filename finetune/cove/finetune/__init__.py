"""Private-SDK fine-tuning: datasets, LoRA training, evaluation and the models they start from."""
