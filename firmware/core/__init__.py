# Station logic: config, journal, rack, bay sequence, charge dispatch, supervisor.
