"""The example-workflow builder behind ``example_workflows/build.py``.

* ``schema``     the node-schema snapshot (``schemas/node_schemas.json``) and ``Spec``;
* ``graph``      the graph model (``Graph``, ``Node``, links) and LiteGraph's geometry;
* ``layout``     a workflow's column plan turned into node positions;
* ``geometry``   sockets, link curves, the layout checks and the first view;
* ``writers``    the UI and API JSON;
* ``texts``      the notes, one Markdown file each under ``notes/``;
* ``families``   the workflows, one module per family.
"""
