"""ipmcam studio: a local web page that steers the live filter, its MJPEG stream and an OBS overlay.

``hub`` keeps the newest published frame for viewers, ``remote`` applies the
page's changes to the pipeline between frames, ``guard`` decides who may
connect, ``app`` holds the routes, ``server`` runs them beside the pipeline,
``cli`` is the ``ipmcam studio`` command and ``bench`` measures its cost.
"""
