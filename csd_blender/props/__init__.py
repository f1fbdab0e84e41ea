"""The add-on's saved settings: one PropertyGroup module per job (`texture` = Scene.csd, `generate` =
Scene.csd_generate, `edit` = Scene.csd_edit) and `results` (Object.csd, the Results list); names and structure
are stored in .blend files and must not change. `job_params` turns settings into protocol job parameters and
`prefs` reads the add-on preferences; both run without bpy at import. It may import `..protocol`, `..link`,
`..scene` and bpy; never operators or panels."""
