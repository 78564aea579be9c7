package app

// Firing returns the firing (nil before NewFiring).
func (a *Application) Firing() *Firing { return a.firing }
