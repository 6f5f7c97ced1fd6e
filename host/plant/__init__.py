# Plant models of the station: packs, chargers, bay mechanics, vehicles, grid.
