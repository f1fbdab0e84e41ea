"""The add-on's operators (`csd.*`): the modal job base (`job_operator`, with Cancel), one module per job
(`texture`, `generate`, `edit`), the Results list (`results`), the engine (`engine`) and Set Up Engine with the
interpreter check (`setup`), the Models panel's Refresh / Download / Cancel / Remove (`models`); `uv_choice` is the UV dialog texture operators mix in. It may import `..protocol`,
`..link`, `..scene`, `..props` and bpy; never panels or preferences."""
