"""Score-distillation guidance: CSD (paper Eq. 10/11), SDS, schedules and presets."""
