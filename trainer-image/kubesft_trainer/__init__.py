"""kubesft_trainer: the containerized SFT trainer run by the kubesft operator."""
