"""kubesft: fine-tune LLMs on Kubernetes with two custom resources."""
