"""Blender data in and out: scene <-> arrays (meshes and UVs, cameras, images), the UV check, the live preview,
where the add-on may write, and the results (image, materials, the Results list). Functions take bpy data as
arguments and import bpy inside the functions that touch it, so the pure maths is tested without Blender. It may
import `..protocol`, `..link`, numpy and bpy; never props, operators or panels (settings arrive as arguments)."""
