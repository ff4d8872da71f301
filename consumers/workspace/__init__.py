"""The workspace domain: `workspace.members` and `workspace.teams`, kept equal to the IdP's users and groups."""
