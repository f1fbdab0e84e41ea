"""The "CSD" tab of the 3D viewport's sidebar: `common` (the panel base class with the tab's space, region and
category, and drawing helpers the panels share) and one module per panel: `engine`, `texture`, `generate`,
`edit`, `results`. Panels only draw: they read settings and session state and call operators by id. It may import
every layer below it (`..protocol`, `..link`, `..scene`, `..props`, `..operators`) and bpy; never preferences."""
