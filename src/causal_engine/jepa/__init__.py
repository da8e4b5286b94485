"""V-JEPA video representations: masks, encoder and predictor, the EMA-target LightningModule."""
