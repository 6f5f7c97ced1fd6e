# Board configurations (one JSON file per supported board) and their validator.
