package led

import (
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
)

// ActiveLow wraps the pin of an LED that lights when its line is low, so that High still
// means "lit" to the patterns.
func ActiveLow(p gpio.PinOut) gpio.PinOut { return activeLow{p} }

type activeLow struct{ gpio.PinOut }

// Out implements gpio.PinOut with the level inverted.
func (p activeLow) Out(l gpio.Level) error { return p.PinOut.Out(!l) }

// PWM implements gpio.PinOut with the duty cycle inverted.
func (p activeLow) PWM(d gpio.Duty, f physic.Frequency) error {
	return p.PinOut.PWM(gpio.DutyMax-d, f)
}
