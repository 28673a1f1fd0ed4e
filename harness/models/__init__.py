"""Models shared by methods and tasks: the ViT encoder factory and task heads."""
